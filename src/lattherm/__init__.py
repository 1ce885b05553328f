"""lattherm: neural samplers of lattice thermodynamics, with exact and Monte Carlo references.

Modules (lower layers never import higher ones): ``lattices`` → ``systems`` → ``conditions`` →
``reference`` → ``models`` → ``training`` → ``sampling`` → ``observables`` → ``io`` →
``plotting``. Conventions (site states, signs, units) are those of DESIGN §3 and are repeated in
each module's docstring where they matter.
"""

__version__ = "0.1.0"
