"""The demo county behind ``guanai demo``: planned from a seed (``plan``), written through the
command side (``seed``, ``visits``, ``emergencies``) and summarised (``report``)."""
