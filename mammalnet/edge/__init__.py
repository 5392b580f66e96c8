"""On the buoy: runtimes and helpers that import numpy and ai_edge_litert only, never tensorflow."""
