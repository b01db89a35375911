"""The things a user runs: provisioning, sync, reports, the scheduler and the command line."""
