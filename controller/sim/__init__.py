"""Closed-loop evaluation of the controller in the SUMO traffic simulator (needs the ``sim`` extra)."""
