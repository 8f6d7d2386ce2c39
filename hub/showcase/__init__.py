"""A learner's project, shown to people outside the lab: a read-only page at a share link (`hub.showcase.model`
for the rules, `store` for its registry rows, `page` for the HTML)."""
