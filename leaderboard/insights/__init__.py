"""What makes the tables useful today: papers' numbers beside Shelfmark's measurements, progress since 2014,
a page per model, and telling people (email, the versions feed, citations of published versions)."""
