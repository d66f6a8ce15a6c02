# This project's own Make targets. The Makefile includes this file, and no template update ever
# changes it, so a target added here never conflicts with one the template adds. They appear in
# `make help` beside the others, and may use the Makefile's variables ($(RUN), $(CLI), $(UV)).
# For example:
#
# .PHONY: report
# report: models/current/metrics.json ## Print the model's test metrics
# 	cat models/current/metrics.json
