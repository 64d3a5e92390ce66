-- A formula saved without its value reads as an empty cell: staged rows keep which roster columns
-- were such formulas, so validation can say so instead of "required but empty".
ALTER TABLE staged_rows ADD COLUMN formula_cells VARCHAR;
-- Review decisions survive a re-read of the sheets (a corrected file uploaded to a held batch
-- numbers its rows anew): each item keeps a key of the row's student and school, and a re-match
-- carries a decision over to the item with the same key.
ALTER TABLE review_items ADD COLUMN row_key VARCHAR;
