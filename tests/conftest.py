import os

# Tests must not fight over the 2 cores with oversubscribed thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
