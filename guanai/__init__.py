"""Guanai (关爱): the service layer and composition roots around the care domain.

- ``guanai.settings``: typed settings, read once from the environment;
- ``guanai.application``: the command side (one eventsourcing Application);
- ``guanai.embedded``: the embedded PostgreSQL and NATS of the no-configuration default;
- ``guanai.cli``: the ``guanai`` command, the composition root of every process.
"""
