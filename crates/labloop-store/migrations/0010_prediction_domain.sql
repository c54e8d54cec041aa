-- A prediction made outside its model's training domain says so: which features, how far out
-- (NULL for a prediction inside it, and for every prediction recorded before the column).
ALTER TABLE predictions ADD COLUMN out_of_domain TEXT;
