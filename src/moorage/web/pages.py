"""The browsing pages: repositories, one repository's tags and usage, one image; deleting a tag,
a manifest or (for admins) a whole repository. A repository the viewer may not pull gets
exactly the page a missing one gets."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.browse import NameMatch, TagOrder
from moorage.oci.digest import is_digest_like
from moorage.services.browse import TagRow
from moorage.threads import in_thread
from moorage.web.context import WebContext
from moorage.web.forms import FormRefused, read_form
from moorage.web.render import query_url, render, repository_url
from moorage.web.viewer import Viewer, viewer_of

# The separator between a repository name and a page inside it: no name component can be "-".
SEPARATOR = "/-/"
# Search text longer than any repository name finds nothing; it is cut, not refused.
SEARCH_MAX = 255
# Up to this many tags, a repository's page shows its usage; past it, on request.
USAGE_INLINE_TAGS = 1000
# Longest text a repository delete's confirmation field passes on: no name is longer.
CONFIRM_MAX = 256

_NOT_FOUND = frozenset({ErrorCode.NAME_UNKNOWN, ErrorCode.MANIFEST_UNKNOWN, ErrorCode.NAME_INVALID})


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else 1


def not_found(request: Request, context: WebContext, viewer: Viewer) -> Response:
    """The one answer for a repository or image that is missing or that the viewer may not
    pull: nothing on it depends on which."""
    return render(request, context, viewer, "not_found.html", 404)


def refused(request: Request, context: WebContext, viewer: Viewer, reason: str) -> Response:
    return render(request, context, viewer, "refused.html", 403, reason=reason)


async def repositories(request: Request, context: WebContext) -> Response:
    viewer = viewer_of(context, request)
    query = request.query_params
    text = query.get("q", "").strip().lower()[:SEARCH_MAX]
    match = NameMatch.PREFIX if query.get("match") == "prefix" else NameMatch.CONTAINS
    last = query.get("last") or None
    deleted = query.get("deleted", "")[:SEARCH_MAX]
    if deleted:
        deleted = await in_thread(_repository_deleted, context, viewer, deleted)
    page = await in_thread(
        context.browse.repositories,
        text,
        match,
        context.page_size,
        last,
        viewer.visible(),
        viewer.visible_within(),
    )
    return render(
        request,
        context,
        viewer,
        "repositories.html",
        page=page,
        q=text,
        match=match.value,
        first_page=last is None,
        deleted=deleted,
    )


async def usage(request: Request, context: WebContext) -> Response:
    """Admins only: each namespace's totals and the registry's, as ``moorage usage`` reports
    them. Anyone else gets the page an unknown path gets, before anything is counted."""
    viewer = viewer_of(context, request)
    if not viewer.may_read_usage:
        return not_found(request, context, viewer)
    report = await in_thread(context.usage.report)
    return render(request, context, viewer, "usage.html", report=report)


def _repository_deleted(context: WebContext, viewer: Viewer, name: str) -> str:
    """``name`` if the notice "Deleted NAME" may be shown, else "". Only to someone who may
    delete it (anyone else could learn from the notice whether a name they cannot pull
    exists), and only once it is gone: a crafted link cannot claim a delete that did not
    happen."""
    if not viewer.may_administer(name) or context.usage.repository(name) is not None:
        return ""
    return name


async def repository_pages(request: Request, context: WebContext) -> Response:
    """Everything under /ui/r/: ``NAME``, ``NAME/-/m/REFERENCE``, ``NAME/-/delete``,
    ``NAME/-/delete-repository``."""
    viewer = viewer_of(context, request)
    path: str = request.path_params["path"]
    name, _, rest = path.partition(SEPARATOR)
    if not viewer.may_pull(name):
        return not_found(request, context, viewer)
    reading = request.method in ("GET", "HEAD")
    try:
        if not rest and reading:
            return await _repository(request, context, viewer, name)
        if rest.startswith("m/") and reading:
            return await _image(request, context, viewer, name, rest[2:])
        if rest == "delete":
            return await _delete(request, context, viewer, name)
        if rest == "delete-repository":
            return await _delete_repository(request, context, viewer, name)
    except RegistryError as error:
        if error.code in _NOT_FOUND:
            return not_found(request, context, viewer)
        raise
    return not_found(request, context, viewer)


async def _repository(request: Request, context: WebContext, viewer: Viewer, name: str) -> Response:
    query = request.query_params
    order = TagOrder.TIME if query.get("sort") == "time" else TagOrder.NAME
    page_number = _page_number(query.get("page"))
    tags = await in_thread(context.browse.tags, name, order, page_number, context.page_size)
    # Usage reads every blob reference of the repository: about a millisecond for a few
    # hundred images, 40 ms and more at 10,000. A big repository's usage is computed when asked
    # for, so that paging through its tags stays as fast as for a small one.
    standing = None
    if query.get("usage") == "1" or tags.total <= USAGE_INLINE_TAGS:
        standing = await in_thread(context.usage.repository, name)
        if standing is None:  # deleted since the line above
            return not_found(request, context, viewer)
    # The notice after a delete says what went; a crafted link naming something that is
    # still there shows none (the page must not claim a delete that did not happen).
    deleted = query.get("deleted", "")[:300]
    if deleted:
        still_there = await in_thread(_resolves, context, name, deleted)
        deleted = "" if still_there else deleted
    show_untagged = query.get("untagged") == "1"
    untagged: list[TagRow] = []
    more_untagged = False
    if show_untagged:
        untagged, more_untagged = await in_thread(
            context.browse.untagged, name, _page_number(query.get("upage")), context.page_size
        )
    return render(
        request,
        context,
        viewer,
        "repository.html",
        name=name,
        tags=tags,
        sort=order.value,
        show_untagged=show_untagged,
        untagged=untagged,
        more_untagged=more_untagged,
        untagged_page=_page_number(query.get("upage")),
        may_delete=viewer.may_delete(name) and context.manifests.delete_enabled,
        may_delete_repository=_may_delete_repository(context, viewer, name),
        deleted=deleted,
        standing=standing,
    )


def _may_delete_repository(context: WebContext, viewer: Viewer, name: str) -> bool:
    return viewer.may_administer(name) and context.repositories.delete_enabled


def _resolves(context: WebContext, name: str, reference: str) -> bool:
    try:
        context.manifests.get(name, reference)
    except RegistryError:
        return False
    return True


async def _image(
    request: Request, context: WebContext, viewer: Viewer, name: str, reference: str
) -> Response:
    details = await in_thread(context.browse.image, name, reference)
    return render(
        request,
        context,
        viewer,
        "image.html",
        name=name,
        reference=reference,
        by_digest=is_digest_like(reference),
        details=details,
        may_delete=viewer.may_delete(name) and context.manifests.delete_enabled,
    )


async def _delete(request: Request, context: WebContext, viewer: Viewer, name: str) -> Response:
    """GET: the confirmation step. POST: delete a tag (the tag only) or a digest (the
    manifest and every tag on it), as the API's DELETE does."""
    if not (viewer.may_delete(name) and context.manifests.delete_enabled):
        return refused(request, context, viewer, "You may not delete in this repository.")
    if request.method != "POST":
        reference = request.query_params.get("ref", "")
        # The manifest must exist for a confirmation to make sense; this also keeps the page
        # from echoing arbitrary text.
        await in_thread(context.manifests.get, name, reference)
        return render(
            request,
            context,
            viewer,
            "confirm_delete.html",
            name=name,
            reference=reference,
            by_digest=is_digest_like(reference),
        )
    try:
        form = await read_form(request, context)
    except FormRefused as error:
        return refused(request, context, viewer, str(error))
    reference = form.get("ref", "")
    await in_thread(context.manifests.delete, name, reference)
    return RedirectResponse(query_url(repository_url(name), deleted=reference), status_code=303)


async def _delete_repository(
    request: Request, context: WebContext, viewer: Viewer, name: str
) -> Response:
    """GET: the confirmation step, which asks for the name to be typed. POST: delete the
    repository (tags, manifests, blob links), as ``DELETE /api/v1/repositories/NAME`` does."""
    if not _may_delete_repository(context, viewer, name):
        return refused(request, context, viewer, "You may not delete this repository.")
    typed: str | None = None
    if request.method == "POST":
        try:
            form = await read_form(request, context)
        except FormRefused as error:
            return refused(request, context, viewer, str(error))
        typed = form.get("confirm", "")[:CONFIRM_MAX]
        if typed == name:
            await in_thread(context.repositories.delete, name)
            return RedirectResponse(query_url("/ui/", deleted=name), status_code=303)
    # The confirmation says what would go; a repository that is already gone has none.
    standing = await in_thread(context.usage.repository, name)
    if standing is None:
        return not_found(request, context, viewer)
    return render(
        request,
        context,
        viewer,
        "confirm_delete_repository.html",
        200 if typed is None else 400,
        name=name,
        usage=standing.usage,
        mistyped=typed is not None,
    )
