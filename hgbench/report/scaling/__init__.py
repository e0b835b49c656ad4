"""The scaling report: the sweep's rows as points (`data`), why a cost is off its operation count
(`deviations`), the log-log figures (`figures`) and report.md (`writer`)."""
