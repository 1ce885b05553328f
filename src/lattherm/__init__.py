"""lattherm: neural samplers of lattice thermodynamics, with exact and Monte Carlo references.

Modules, lower layers first (a module imports only from the layers before it): ``schema``,
``lattices`` → ``systems`` (the registry of energy models) → ``conditions``, ``io`` →
``reference`` → ``models`` → ``sampling`` → ``training`` (with ``runlog`` and ``distributed``) →
``observables`` → ``evaluation`` → ``config`` → ``plotting``, ``report``, ``cli``. Conventions
(site states, signs, units) are those of docs/DESIGN.md §3 and are repeated in each module's
docstring where they matter.
"""

__version__ = "0.1.0"
