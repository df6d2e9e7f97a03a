"""Second-order tools: Hessian-vector products (``hvp``), power iteration (``power``),
Hutchinson trace/diagonal (``hutchinson``) and HAWQ mixed precision (``hawq``).
OBD pruning, which uses the Hutchinson diagonal, lives in ``compress.prune.obd``."""
