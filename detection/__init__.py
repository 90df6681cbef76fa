"""What counts as a finding: the streaming anomaly detector and the threshold rules."""
