"""A simulated BlueZ on a private D-Bus, with a radio model and an air log, for tests and the test-bed."""
