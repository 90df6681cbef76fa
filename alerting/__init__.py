"""What a person is told and who is told: alert wording and the routing tree."""
