"""The end of a course: `labhub cohort archive` keeps a cohort's data and records it, `labhub cohort purge` then
removes every trace of the cohort from the lab (readings, evidence, accounts, tokens, registry rows)."""
