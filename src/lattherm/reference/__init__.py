"""Reference thermodynamics: exact (enumeration, transfer matrix, Kaufman, Onsager), Monte Carlo
(batched Metropolis, Wang–Landau) and CLEASE metadynamics for CuAu."""
