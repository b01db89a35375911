"""The revision files, oldest first by ``down_revision``: each one a step of the mirror's schema."""
