"""Site quorum (issue 11): placement of site-scoped workloads and the leases that fence them."""
