"""The truck fleet simulator: haul cycles on the mine's road graph, telemetry physics, injected
faults with ground-truth labels. Also the load generator for the benchmarks."""
