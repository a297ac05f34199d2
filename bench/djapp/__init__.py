"""The Student model of workloads A-E, for the Django-based contenders."""
