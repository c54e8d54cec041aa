-- The workflow with the text of every file it includes (labloop_workflow::Bundle as JSON), so a
-- campaign's workflow reads again from the store alone. NULL for campaigns of older stores (their
-- includes are read from disk, as then).
ALTER TABLE campaigns ADD COLUMN workflow_bundle TEXT;
