"""The browsing pages: repositories, one repository's tags, one image; deleting a tag or a
manifest. A repository the viewer may not pull gets exactly the page a missing one gets."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.browse import NameMatch, TagOrder
from moorage.oci.digest import is_digest_like
from moorage.services.browse import TagRow
from moorage.web.context import WebContext
from moorage.web.forms import FormRefused, read_form
from moorage.web.render import query_url, render, repository_url
from moorage.web.viewer import Viewer, viewer_of

# The separator between a repository name and a page inside it: no name component can be "-".
SEPARATOR = "/-/"
# Search text longer than any repository name finds nothing; it is cut, not refused.
SEARCH_MAX = 255

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
    page = await run_in_threadpool(
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
    )


async def repository_pages(request: Request, context: WebContext) -> Response:
    """Everything under /ui/r/: ``NAME``, ``NAME/-/m/REFERENCE``, ``NAME/-/delete``."""
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
    except RegistryError as error:
        if error.code in _NOT_FOUND:
            return not_found(request, context, viewer)
        raise
    return not_found(request, context, viewer)


async def _repository(request: Request, context: WebContext, viewer: Viewer, name: str) -> Response:
    query = request.query_params
    order = TagOrder.TIME if query.get("sort") == "time" else TagOrder.NAME
    page_number = _page_number(query.get("page"))
    tags = await run_in_threadpool(context.browse.tags, name, order, page_number, context.page_size)
    # The notice after a delete says what went; a crafted link naming something that is
    # still there shows none (the page must not claim a delete that did not happen).
    deleted = query.get("deleted", "")[:300]
    if deleted:
        still_there = await run_in_threadpool(_resolves, context, name, deleted)
        deleted = "" if still_there else deleted
    show_untagged = query.get("untagged") == "1"
    untagged: list[TagRow] = []
    more_untagged = False
    if show_untagged:
        untagged, more_untagged = await run_in_threadpool(
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
        deleted=deleted,
    )


def _resolves(context: WebContext, name: str, reference: str) -> bool:
    try:
        context.manifests.get(name, reference)
    except RegistryError:
        return False
    return True


async def _image(
    request: Request, context: WebContext, viewer: Viewer, name: str, reference: str
) -> Response:
    details = await run_in_threadpool(context.browse.image, name, reference)
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
        await run_in_threadpool(context.manifests.get, name, reference)
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
    await run_in_threadpool(context.manifests.delete, name, reference)
    return RedirectResponse(query_url(repository_url(name), deleted=reference), status_code=303)
