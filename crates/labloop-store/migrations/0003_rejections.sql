-- A person may also reject a waiting step (the step then fails and its on_failure policy applies).
ALTER TABLE approvals ADD COLUMN approved BIGINT NOT NULL DEFAULT 1;
