"""mespot.calibration: operating points, per-subject neutral baseline, quantisation."""
