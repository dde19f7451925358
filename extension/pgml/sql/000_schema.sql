-- Schema pgml, PostgresML's, a member of this extension: DROP EXTENSION pgmodels_pgml
-- removes it (and refuses while tables someone loaded into it are there, unless CASCADE).
-- Every role may look into it; what each sees of the catalog is filtered in the views.
CREATE SCHEMA pgml;
COMMENT ON SCHEMA pgml IS 'PostgresML compatibility (extension pgmodels_pgml): PostgresML''s classic-ML functions and views over pgmodels';
GRANT USAGE ON SCHEMA pgml TO PUBLIC;
