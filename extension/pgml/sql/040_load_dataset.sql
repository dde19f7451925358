-- pgml.load_dataset(name): PostgresML's toy data sets, loaded offline from the copies
-- scikit-learn bundles, into PostgresML's tables (the same names, columns and types).
-- PostgresML's other sources are Hugging Face data sets, downloaded at run time: pgmodels
-- downloads nothing, so any other name is an error that lists the ones there are.
--
-- Who may run it: a role that may create tables in schema pgml (the extension's owner,
-- superusers, roles granted CREATE ON SCHEMA pgml). It runs with the caller's rights, so
-- the table it makes belongs to the caller, and replacing a table someone else loaded
-- fails as DROP TABLE does for a non-owner.
DO $pgml$
BEGIN
EXECUTE $sql$

CREATE OR REPLACE FUNCTION pgml._dataset_rows(name text, max_rows bigint) RETURNS jsonb
LANGUAGE plpython3u VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.pgml.datasets import rows_json; return rows_json(name, max_rows)
$$;
COMMENT ON FUNCTION pgml._dataset_rows(text, bigint) IS 'internal: the rows of one of scikit-learn''s bundled data sets, as a jsonb array of objects keyed by PostgresML''s column names';

CREATE OR REPLACE FUNCTION pgml.load_dataset(source text, subset text DEFAULT NULL, "limit" bigint DEFAULT NULL,
                                             kwargs jsonb DEFAULT '{}')
RETURNS TABLE (table_name text, rows bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ddl text;
    data jsonb;
    n bigint;
BEGIN
    ddl := CASE source
        WHEN 'breast_cancer' THEN $t$CREATE TABLE pgml.breast_cancer (
            "mean radius" FLOAT4, "mean texture" FLOAT4, "mean perimeter" FLOAT4, "mean area" FLOAT4,
            "mean smoothness" FLOAT4, "mean compactness" FLOAT4, "mean concavity" FLOAT4,
            "mean concave points" FLOAT4, "mean symmetry" FLOAT4, "mean fractal dimension" FLOAT4,
            "radius error" FLOAT4, "texture error" FLOAT4, "perimeter error" FLOAT4, "area error" FLOAT4,
            "smoothness error" FLOAT4, "compactness error" FLOAT4, "concavity error" FLOAT4,
            "concave points error" FLOAT4, "symmetry error" FLOAT4, "fractal dimension error" FLOAT4,
            "worst radius" FLOAT4, "worst texture" FLOAT4, "worst perimeter" FLOAT4, "worst area" FLOAT4,
            "worst smoothness" FLOAT4, "worst compactness" FLOAT4, "worst concavity" FLOAT4,
            "worst concave points" FLOAT4, "worst symmetry" FLOAT4, "worst fractal dimension" FLOAT4,
            "malignant" BOOLEAN)$t$
        WHEN 'diabetes' THEN $t$CREATE TABLE pgml.diabetes (
            age FLOAT4, sex FLOAT4, bmi FLOAT4, bp FLOAT4, s1 FLOAT4, s2 FLOAT4, s3 FLOAT4, s4 FLOAT4,
            s5 FLOAT4, s6 FLOAT4, target FLOAT4)$t$
        WHEN 'digits' THEN $t$CREATE TABLE pgml.digits (image SMALLINT[][], target SMALLINT)$t$
        WHEN 'iris' THEN $t$CREATE TABLE pgml.iris (
            sepal_length FLOAT4, sepal_width FLOAT4, petal_length FLOAT4, petal_width FLOAT4, target INT4)$t$
        WHEN 'linnerud' THEN $t$CREATE TABLE pgml.linnerud (
            chins FLOAT4, situps FLOAT4, jumps FLOAT4, weight FLOAT4, waist FLOAT4, pulse FLOAT4)$t$
        WHEN 'wine' THEN $t$CREATE TABLE pgml.wine (
            alcohol FLOAT4, malic_acid FLOAT4, ash FLOAT4, alcalinity_of_ash FLOAT4, magnesium FLOAT4,
            total_phenols FLOAT4, flavanoids FLOAT4, nonflavanoid_phenols FLOAT4, proanthocyanins FLOAT4,
            hue FLOAT4, color_intensity FLOAT4, "od280/od315_of_diluted_wines" FLOAT4, proline FLOAT4,
            target INT4)$t$
        END;
    IF ddl IS NULL THEN
        RAISE EXCEPTION 'unknown data set "%"', source
            USING ERRCODE = '22023',
                  DETAIL = 'pgml.load_dataset loads, offline, the data sets scikit-learn bundles: '
                           'breast_cancer, diabetes, digits, iris, linnerud, wine.',
                  HINT = 'PostgresML''s other sources are Hugging Face data sets downloaded at run time, '
                         'which pgmodels does not do; load such data with COPY.';
    ELSIF "limit" < 0 THEN
        RAISE EXCEPTION 'limit must not be negative' USING ERRCODE = '22023';
    ELSIF NOT pg_catalog.has_schema_privilege('pgml', 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for schema pgml'
            USING ERRCODE = '42501',
                  DETAIL = 'pgml.load_dataset creates its table in schema pgml, which needs the CREATE privilege on it.',
                  HINT = 'The schema''s owner may GRANT CREATE ON SCHEMA pgml to the role.';
    END IF;
    data := coalesce(pgml._dataset_rows(source, "limit"), pgmodels._raise_pending(NULL::jsonb));
    IF pg_catalog.to_regclass(pg_catalog.format('pgml.%I', source)) IS NOT NULL THEN  -- no NOTICE when absent
        EXECUTE pg_catalog.format('DROP TABLE pgml.%I', source);
    END IF;
    EXECUTE ddl;
    EXECUTE pg_catalog.format('INSERT INTO pgml.%1$I SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::pgml.%1$I, $1)', source)
        USING data;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'pgml.' || source, n;
END
$$;
COMMENT ON FUNCTION pgml.load_dataset(text, text, bigint, jsonb) IS 'PostgresML''s load_dataset(): (re)creates pgml.<name> from scikit-learn''s bundled copy of breast_cancer, diabetes, digits, iris, linnerud or wine; returns the table and its row count';

-- the data a role reads is its business; only the load checks privileges
GRANT EXECUTE ON FUNCTION pgml._dataset_rows(text, bigint) TO PUBLIC;

$sql$;
END
$pgml$;
