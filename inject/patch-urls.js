// Run-time URL patches: see docs (placeholder until written).
