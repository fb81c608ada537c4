"""The simulated workplace test-bed: scenarios, ground truth and efficacy figures."""
