"""The web client (issue 16): server-rendered pages under /app for volunteers, responders,
supervisors, auditors and administrators, served by the API's own Litestar app and decided by
its one guard and access table. Templates in ``templates/``, scripts and styles in ``static/``
(third-party files vendored with their licence under ``static/vendor/<name>-<version>/``)."""
