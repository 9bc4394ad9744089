"""Deployment recipes rendered from package templates (``templates/``): the EC2 cloud-init
user-data of ``moorage deploy cloud-init`` and the systemd unit it installs."""
