"""The plan: its model, how it reads (``render``), the rule vocabulary (``rules``) and
date patterns (``dates``)."""
