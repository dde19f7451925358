/*
 * pgmodels_native: the one-row predict() of a tree ensemble, in C.
 *
 * Why C: a one-row predict statement is a key lookup plus a model run, and the
 * PL/Python call and onnxruntime's per-run cost (20 to 40 microseconds in a backend
 * between statements) were most of it. This library is only the hot path (this
 * file the SQL functions, trees.c the trees and their registrations); the logic
 * stays in Python (python_udfs/pgmodels/serving/native.py and cache.py):
 *
 *  - Which role may be served which model is decided by pgmodels._lookup and kept by
 *    the Python decision cache (cache.py). When that cache confirms a decision (role,
 *    project or model id) -> model, for a model whose graph is one tree ensemble that
 *    this file evaluates exactly as onnxruntime does (checked on probe rows first),
 *    Python hands the trees here with pgmodels_native_register(), through ctypes:
 *    no SQL function can register anything.
 *  - pgmodels._predict_native(project, model_id, features) answers only when this
 *    backend holds a registration for the role the statement runs as (GetUserId(),
 *    which no caller chooses) and the same project or model id, made at the
 *    invalidation count the backend still has (SharedInvalidMessageCounter: a grant,
 *    revoke, deploy, rollback, role change or DROP ROLE that committed since moves it;
 *    the queue is read first, as PostgreSQL reads it at a relation lock),
 *    in a transaction that has written nothing, within the first second of it, outside
 *    SECURITY DEFINER functions (GetUserId() is the session's role), for a float4 or
 *    float8 array of the model's length with finite values. The rules are cache.py's
 *    for its own decisions. Anything else returns NULL and the SQL wrapper goes on to
 *    the Python cores, which answer or raise the right error.
 *  - A statement's own lookup is handed over too (cache.load, once its trees are
 *    translated): for the role it checked, if that is the session's, with no rollout,
 *    answering the rest of that statement only (its pgmodels._stamp()) for a second,
 *    as Python serves its own registration. So the later rows of a statement whose
 *    first row was looked up, and predict_batch() after its lookup, walk the trees in C
 *    even where no kept decision stands (a transaction that wrote, a cluster whose
 *    catalog keeps changing).
 *
 * It reads only its arguments and its own memory: no catalog, no operator, no cast,
 * no function of anyone's making.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "trees.h"

PG_MODULE_MAGIC;

/* ---- SQL ---- */

/*
 * n values of a float4 or float8 array without NULLs, from element offset on, as float4:
 * false when one is NaN, infinite or beyond float4's range (the cores say why).
 */
static bool
read_row(ArrayType *a, size_t offset, int n, float4 *x)
{
	if (ARR_ELEMTYPE(a) == FLOAT4OID)
		memcpy(x, (const float4 *) ARR_DATA_PTR(a) + offset, sizeof(float4) * n);
	else if (ARR_ELEMTYPE(a) == FLOAT8OID)
	{
		const float8 *d = (const float8 *) ARR_DATA_PTR(a) + offset;

		for (int i = 0; i < n; i++)
		{
			if (!(fabs(d[i]) <= FLT_MAX))
				return false;
			x[i] = (float4) d[i];
		}
	}
	else
		return false;
	for (int i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return false;
	return true;
}

/*
 * The answer of a registration for this row, if there is one: false sends the caller
 * to the Python cores.
 */
static bool
native_answer(text *project, int64 model_id, ArrayType *a, float4 *answer)
{
	const TreeModel *m = trees_registered(project, model_id);
	int			n;
	float4		row[64];
	float4		scores[64];
	float4	   *x = row;
	float4	   *s = scores;

	if (m == NULL)
		return false;
	n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	if (ARR_NDIM(a) != 1 || ARR_HASNULL(a) || n != m->h.n_features)
		return false;
	if (n > 64)
		x = palloc(sizeof(float4) * n);
	if (m->h.n_classes > 64)
		s = palloc(sizeof(float4) * m->h.n_classes);
	if (!read_row(a, 0, n, x))
		return false;
	*answer = trees_evaluate(m, x, s);
	return true;
}

PG_FUNCTION_INFO_V1(pgmodels_predict_batch_native);

/*
 * pgmodels._predict_batch_native(project_name text, model_id bigint, features real[])
 * real[]: predict_batch()'s answers, one per row of a flat array of whole rows or of a
 * two-dimensional [rows][features] array, or NULL for "ask the Python cores".
 */
Datum
pgmodels_predict_batch_native(PG_FUNCTION_ARGS)
{
	const TreeModel *m;
	ArrayType  *a;
	int			n;
	int			k;
	int			rows;
	float4	   *x;
	float4	   *s;
	float4	   *answers;
	Datum	   *out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	m = trees_registered(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(1));
	if (m == NULL)
		PG_RETURN_NULL();
	a = PG_GETARG_ARRAYTYPE_P(2);
	k = m->h.n_features;
	n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	if (ARR_HASNULL(a) || n == 0 || n % k != 0 || ARR_NDIM(a) > 2 || (ARR_NDIM(a) == 2 && ARR_DIMS(a)[1] != k))
		PG_RETURN_NULL();
	rows = n / k;
	x = palloc(sizeof(float4) * k * TREES_BLOCK);
	s = palloc(sizeof(float4) * m->h.n_classes * TREES_BLOCK);
	answers = palloc(sizeof(float4) * TREES_BLOCK);
	out = palloc(sizeof(Datum) * rows);
	for (int r = 0; r < rows; r += TREES_BLOCK)
	{
		int			b = rows - r < TREES_BLOCK ? rows - r : TREES_BLOCK;

		CHECK_FOR_INTERRUPTS();
		if (!read_row(a, (size_t) r * k, k * b, x))
			PG_RETURN_NULL();
		trees_evaluate_block(m, x, b, s, answers);
		for (int i = 0; i < b; i++)
			out[r + i] = Float4GetDatum(answers[i]);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(out, rows, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT));
}

PG_FUNCTION_INFO_V1(pgmodels_predict_native);

/*
 * pgmodels._predict_native(project_name text, model_id bigint, features anyarray) real:
 * the answer, or NULL for "ask the Python cores".
 */
Datum
pgmodels_predict_native(PG_FUNCTION_ARGS)
{
	float4		answer;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	if (!native_answer(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(1), PG_GETARG_ARRAYTYPE_P(2), &answer))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT4(answer);
}

/*
 * predict(project_name text | model_id bigint, features real[] | double precision[]),
 * the forms a features column usually takes. What the SQL wrappers of the other forms
 * say (sql/040_serving.sql), without a query to plan for it on every statement (through
 * a transaction pooler, with the simple protocol, planning the inlined wrapper cost more
 * than the row's lookup):
 *
 *   coalesce(<the C answer>,
 *            pgmodels._predict(project, id, features, <stamp>, NULL),
 *            pgmodels._predict(project, id, features, <stamp>,
 *                              pgmodels._lookup(project, id, pgmodels._credential())),
 *            pgmodels._raise_pending(NULL::integer))
 *
 * The functions are pgmodels' own, found by name in schema pgmodels (which only the
 * extension's owner may create in), each called with the EXECUTE privilege of the
 * calling role checked, as the executor checks it for the wrapper's calls. _lookup is a
 * SECURITY DEFINER function, called as such.
 */
typedef struct Site
{
	Oid			user;			/* the role whose EXECUTE privileges were checked */
	FmgrInfo	core;
	FmgrInfo	credential;
	FmgrInfo	lookup;
	FmgrInfo	raise;
} Site;

static Oid
internal_function(const char *name, int nargs, const Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString("pgmodels"), makeString(pstrdup(name))), nargs, argtypes, false);
}

static void
may_execute(FmgrInfo *f, Oid user)
{
	AclResult	result = pg_proc_aclcheck(f->fn_oid, user, ACL_EXECUTE);

	if (result != ACLCHECK_OK)
		aclcheck_error(result, OBJECT_FUNCTION, get_func_name(f->fn_oid));
}

static Site *
site_for(FunctionCallInfo fcinfo, Oid array_type)
{
	Site	   *s = (Site *) fcinfo->flinfo->fn_extra;
	Oid			user = GetUserId();

	if (s == NULL)
	{
		MemoryContext cxt = fcinfo->flinfo->fn_mcxt;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Oid			core_args[5] = {TEXTOID, INT8OID, array_type, FLOAT8OID, BOOLOID};
		Oid			lookup_args[3] = {TEXTOID, INT8OID, TEXTOID};
		Oid			raise_args[1] = {ANYELEMENTOID};
		Oid			raise;

		s = palloc0(sizeof(Site));
		fmgr_info_cxt(internal_function("_predict", 5, core_args), &s->core, cxt);
		fmgr_info_cxt(internal_function("_credential", 0, NULL), &s->credential, cxt);
		fmgr_info_cxt(internal_function("_lookup", 3, lookup_args), &s->lookup, cxt);
		raise = internal_function("_raise_pending", 1, raise_args);
		fmgr_info_cxt(raise, &s->raise, cxt);
		/* a polymorphic PL/pgSQL function learns its argument's type from the call */
		s->raise.fn_expr = (Node *) makeFuncExpr(raise, INT4OID,
												 list_make1(makeNullConst(INT4OID, -1, InvalidOid)),
												 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = s;
	}
	if (s->user != user)
	{
		may_execute(&s->core, user);
		may_execute(&s->credential, user);
		may_execute(&s->lookup, user);
		may_execute(&s->raise, user);
		s->user = user;
	}
	return s;
}

/* A call, counted in pg_stat_user_functions as the executor counts the wrapper's calls. */
static Datum
invoke(FunctionCallInfo fc)
{
	PgStat_FunctionCallUsage usage;
	Datum		result;

	pgstat_init_function_usage(fc, &usage);
	result = FunctionCallInvoke(fc);
	pgstat_end_function_usage(&usage, true);
	return result;
}

static Datum
call_core(Site *s, Oid collation, Datum project, Datum id, NullableDatum features, float8 stamp,
		  NullableDatum loaded, bool *isnull)
{
	LOCAL_FCINFO(fc, 5);
	Datum		result;

	InitFunctionCallInfoData(*fc, &s->core, 5, collation, NULL, NULL);
	fc->args[0].value = project;
	fc->args[0].isnull = false;
	fc->args[1].value = id;
	fc->args[1].isnull = false;
	fc->args[2] = features;
	fc->args[3].value = Float8GetDatum(stamp);
	fc->args[3].isnull = false;
	fc->args[4] = loaded;
	result = invoke(fc);
	*isnull = fc->isnull;
	return result;
}

static Datum
predict_row(FunctionCallInfo fcinfo, bool by_id, Oid array_type)
{
	Oid			collation = PG_GET_COLLATION();
	Site	   *s;
	Datum		project;
	Datum		id;
	NullableDatum features;
	NullableDatum loaded;
	Datum		result;
	float8		stamp;
	bool		isnull;
	float4		answer;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();		/* the wrapper's _lookup returns NULL: nothing to answer */
	project = by_id ? CStringGetTextDatum("") : PG_GETARG_DATUM(0);
	id = by_id ? PG_GETARG_DATUM(0) : Int64GetDatum(0);
	features.isnull = PG_ARGISNULL(1);
	features.value = features.isnull ? (Datum) 0 : PointerGetDatum(PG_GETARG_ARRAYTYPE_P(1));
	if (!features.isnull &&
		native_answer(DatumGetTextPP(project), DatumGetInt64(id), DatumGetArrayTypeP(features.value), &answer))
		PG_RETURN_FLOAT4(answer);

	s = site_for(fcinfo, array_type);
	stamp = trees_statement_stamp();
	loaded.value = (Datum) 0;
	loaded.isnull = true;
	result = call_core(s, collation, project, id, features, stamp, loaded, &isnull);
	if (!isnull)
		return result;
	{
		LOCAL_FCINFO(fc, 3);
		LOCAL_FCINFO(cc, 0);
		Datum		credential;

		InitFunctionCallInfoData(*cc, &s->credential, 0, InvalidOid, NULL, NULL);
		credential = invoke(cc);
		if (cc->isnull)
			elog(ERROR, "pgmodels._credential() returned NULL");
		InitFunctionCallInfoData(*fc, &s->lookup, 3, collation, NULL, NULL);
		fc->args[0].value = project;
		fc->args[0].isnull = false;
		fc->args[1].value = id;
		fc->args[1].isnull = false;
		fc->args[2].value = credential;
		fc->args[2].isnull = false;
		loaded.value = invoke(fc);
		loaded.isnull = fc->isnull;
	}
	/*
	 * The lookup may have handed the statement's model to the library (a version stored
	 * with its trees, or one translated earlier): then no Python core runs for this row
	 * either, and a backend's first predict() needs no onnxruntime.
	 */
	if (!loaded.isnull && DatumGetBool(loaded.value) && !features.isnull &&
		native_answer(DatumGetTextPP(project), DatumGetInt64(id), DatumGetArrayTypeP(features.value), &answer))
		PG_RETURN_FLOAT4(answer);
	result = call_core(s, collation, project, id, features, stamp, loaded, &isnull);
	if (!isnull)
		return result;
	{
		LOCAL_FCINFO(fc, 1);

		InitFunctionCallInfoData(*fc, &s->raise, 1, InvalidOid, NULL, NULL);
		fc->args[0].value = (Datum) 0;
		fc->args[0].isnull = true;
		(void) invoke(fc);		/* raises the error the cores recorded, if any */
	}
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(pgmodels_predict_name_f4);
Datum
pgmodels_predict_name_f4(PG_FUNCTION_ARGS)
{
	return predict_row(fcinfo, false, FLOAT4ARRAYOID);
}

PG_FUNCTION_INFO_V1(pgmodels_predict_name_f8);
Datum
pgmodels_predict_name_f8(PG_FUNCTION_ARGS)
{
	return predict_row(fcinfo, false, FLOAT8ARRAYOID);
}

PG_FUNCTION_INFO_V1(pgmodels_predict_id_f4);
Datum
pgmodels_predict_id_f4(PG_FUNCTION_ARGS)
{
	return predict_row(fcinfo, true, FLOAT4ARRAYOID);
}

PG_FUNCTION_INFO_V1(pgmodels_predict_id_f8);
Datum
pgmodels_predict_id_f8(PG_FUNCTION_ARGS)
{
	return predict_row(fcinfo, true, FLOAT8ARRAYOID);
}
