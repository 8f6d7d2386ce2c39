"""Device kinds (schemas, units, ranges): pure code shared by the hub, the simulators and the docs."""
