# The template's own targets. The Makefile includes this file when it exists, so projects made
# from the template (which do not get it) have none of these.
.PHONY: new sync-template check-template

new: install ## Scaffold a project and bring it up: make new DEST=../my-project [NAME="My Project"] [TASK=text_classification] [SLUG=my-project PACKAGE=my_project]
	$(RUN) python scripts/new_project.py "$(DEST)" \
		$(if $(filter command line,$(origin NAME)),--name "$(NAME)") \
		$(if $(filter command line,$(origin TASK)),--data "task=$(TASK)") \
		$(if $(filter command line,$(origin SLUG)),--data "project_slug=$(SLUG)") \
		$(if $(filter command line,$(origin PACKAGE)),--data "package_name=$(PACKAGE)") \
		$(if $(ALLOW_DIRTY),--allow-dirty)

sync-template: ## Regenerate template/ from this repository's own files
	$(RUN) python scripts/sync_template.py

check-template: ## Fail if template/ is out of date with this repository's files
	$(RUN) python scripts/sync_template.py --check

lint: check-template
