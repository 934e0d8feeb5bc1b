"""The sensors pipeline's definitions: reading/feature/prediction schemas, the sliding-window
feature math (FA, FI, FD), the versioned bin edges and the alert-model interface.

Every client has three sensors: SX and SY report categorical integers (0..9), SZ a float reading.
For each SZ reading the window features of the preceding 10 minutes of that client's SZ readings
are computed (:mod:`features.sensors.window_math`), binned into 10 buckets
(:mod:`features.sensors.binning`) and joined with the latest SX, SY into the 5-integer vector the
alert model scores (:mod:`features.sensors.model`). Imports nothing outside `features`.
"""
