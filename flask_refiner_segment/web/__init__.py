"""The settings page and what every page of the extension shares."""
