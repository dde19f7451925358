/*
 * pgmodels_native: the one-row predict() of a tree ensemble, in C.
 *
 * Why C: a one-row predict statement is a key lookup plus a model run, and the
 * PL/Python call and onnxruntime's per-run cost (20 to 40 microseconds in a backend
 * between statements) were most of it. This file is only the hot path; the logic
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
#include "storage/sinval.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

#define MAGIC 0x706d6e31		/* "pmn1": the layout below */
#define MAX_ENTRIES 32
#define MAX_KEY 256
#define WINDOW_USECS 1000000	/* cache.py's TTL */
#define BLOCK 64				/* rows a batch walks each tree for at once */

/* node modes, as serving/native.py numbers them */
enum
{
	LEAF = 0, BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ
};

/* what the sum of the trees becomes */
enum
{
	KIND_VALUE = 0,				/* a regressor: the sum (or mean) plus the base */
	KIND_BINARY = 1,			/* one score: the second class when above the threshold */
	KIND_ARGMAX = 2				/* a score per class: the first highest */
};

typedef struct TreeNode
{
	int32		feature;		/* a branch's feature; a leaf's class */
	float4		value;			/* a branch's threshold; a leaf's weight */
	int32		yes;			/* the node taken when the comparison holds */
	int32		no;
	int32		mode;
} TreeNode;

typedef struct TreeHeader
{
	int32		magic;
	int32		n_features;
	int32		kind;
	int32		n_classes;		/* scores: 1 for KIND_VALUE and KIND_BINARY */
	int32		n_trees;
	int32		n_nodes;
	int32		average;		/* divide the sum by the number of trees */
	float4		threshold;		/* KIND_BINARY */
} TreeHeader;

/*
 * The blob Python builds: the header, then float4 base[n_classes] (added to the sums),
 * float4 answers[max(n_classes, 2)] (what predict() returns for each class, or unused),
 * int32 roots[n_trees], TreeNode nodes[n_nodes].
 */
typedef struct TreeModel
{
	TreeHeader		h;
	int			same_mode;		/* the mode of every branch, or LEAF when they differ */
	float4	   *base;
	float4	   *answers;
	int32	   *roots;
	TreeNode	   *nodes;
	char	   *memory;
} TreeModel;

typedef struct Entry
{
	bool		used;
	Oid			role;
	int64		model_id;
	int			key_len;
	char		key[MAX_KEY];
	uint64		count;
	TreeModel	   *model;
} Entry;

static Entry entries[MAX_ENTRIES];
static int	next_victim = 0;
static uint64 answered = 0;

static TreeModel *
model_from(const char *blob, size_t len)
{
	TreeHeader		h;
	size_t		need;
	int			answers;
	TreeModel	   *m;
	char	   *p;

	if (blob == NULL || len < sizeof(TreeHeader))
		return NULL;
	memcpy(&h, blob, sizeof(TreeHeader));
	if (h.magic != MAGIC || h.n_features < 1 || h.n_features > 1000000 || h.n_trees < 1 ||
		h.n_nodes < h.n_trees || h.n_nodes > 100000000 || h.n_classes < 1 || h.n_classes > 100000 ||
		h.kind < KIND_VALUE || h.kind > KIND_ARGMAX)
		return NULL;
	answers = h.n_classes < 2 ? 2 : h.n_classes;
	need = sizeof(TreeHeader) + sizeof(float4) * (h.n_classes + answers) + sizeof(int32) * h.n_trees +
		sizeof(TreeNode) * (size_t) h.n_nodes;
	if (len != need)
		return NULL;
	p = MemoryContextAllocExtended(TopMemoryContext, need, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
	if (p == NULL)
		return NULL;
	memcpy(p, blob, need);
	m = MemoryContextAllocExtended(TopMemoryContext, sizeof(TreeModel), MCXT_ALLOC_NO_OOM);
	if (m == NULL)
	{
		pfree(p);
		return NULL;
	}
	m->h = h;
	m->memory = p;
	m->base = (float4 *) (p + sizeof(TreeHeader));
	m->answers = m->base + h.n_classes;
	m->roots = (int32 *) (m->answers + answers);
	m->nodes = (TreeNode *) (m->roots + h.n_trees);
	/* every link inside the model, so that a walk can neither leave it nor loop */
	for (int i = 0; i < h.n_trees; i++)
		if (m->roots[i] < 0 || m->roots[i] >= h.n_nodes)
			goto bad;
	for (int i = 0; i < h.n_nodes; i++)
	{
		TreeNode	   *n = &m->nodes[i];

		if (n->mode == LEAF)
		{
			if (n->feature < 0 || n->feature >= h.n_classes)
				goto bad;
		}
		else if (n->mode < BRANCH_LEQ || n->mode > BRANCH_NEQ || n->feature < 0 || n->feature >= h.n_features ||
				 n->yes <= i || n->yes >= h.n_nodes || n->no <= i || n->no >= h.n_nodes)
			goto bad;			/* children come after their parent: no cycle */
	}
	m->same_mode = LEAF;
	for (int i = 0; i < h.n_nodes; i++)
	{
		int			mode = m->nodes[i].mode;

		if (mode == LEAF)
			continue;
		if (m->same_mode == LEAF)
			m->same_mode = mode;
		else if (m->same_mode != mode)
		{
			m->same_mode = -1;
			break;
		}
	}
	if (m->same_mode == -1)
		m->same_mode = LEAF;
	return m;
bad:
	pfree(p);
	pfree(m);
	return NULL;
}

static void
model_free(TreeModel *m)
{
	if (m != NULL)
	{
		pfree(m->memory);
		pfree(m);
	}
}

/*
 * The leaf a tree leads a row to. A model whose branches all compare one way (XGBoost's
 * are all "<", LightGBM's all "<=") walks without a switch per node.
 */
#define WALK(cmp) \
	while (n->mode != LEAF) \
		n = &nodes[(x[n->feature] cmp n->value) ? n->yes : n->no]

static inline const TreeNode *
leaf_of(const TreeModel *m, const TreeNode *n, const float4 *x)
{
	const TreeNode *nodes = m->nodes;

	switch (m->same_mode)
	{
		case BRANCH_LT:
			WALK(<);
			return n;
		case BRANCH_LEQ:
			WALK(<=);
			return n;
		default:
			break;
	}
	while (n->mode != LEAF)
	{
		float4		v = x[n->feature];
		bool		go;

		switch (n->mode)
		{
			case BRANCH_LEQ:
				go = v <= n->value;
				break;
			case BRANCH_LT:
				go = v < n->value;
				break;
			case BRANCH_GTE:
				go = v >= n->value;
				break;
			case BRANCH_GT:
				go = v > n->value;
				break;
			case BRANCH_EQ:
				go = v == n->value;
				break;
			default:
				go = v != n->value;
				break;
		}
		n = &nodes[go ? n->yes : n->no];
	}
	return n;
}

/* A row's answer from the sums of its trees' leaves, as onnxruntime makes it. */
static float4
finish(const TreeModel *m, float4 *scores)
{
	const TreeHeader *h = &m->h;

	if (h->kind == KIND_VALUE)
	{
		float4		s = scores[0];

		if (h->average)
			s /= (float4) h->n_trees;
		return s + m->base[0];
	}
	for (int c = 0; c < h->n_classes; c++)
		scores[c] += m->base[c];
	if (h->kind == KIND_BINARY)
		return m->answers[scores[0] > h->threshold ? 1 : 0];
	{
		int			best = 0;

		for (int c = 1; c < h->n_classes; c++)
			if (scores[c] > scores[best])
				best = c;
		return m->answers[best];
	}
}

/*
 * The answer for one row of n_features finite float4 values, as onnxruntime gives it:
 * each tree's leaf added in tree order, in single precision.
 */
static float4
evaluate(const TreeModel *m, const float4 *x, float4 *scores)
{
	for (int c = 0; c < m->h.n_classes; c++)
		scores[c] = 0.0f;
	for (int t = 0; t < m->h.n_trees; t++)
	{
		const TreeNode *leaf = leaf_of(m, &m->nodes[m->roots[t]], x);

		scores[leaf->feature] += leaf->value;
	}
	return finish(m, scores);
}

/*
 * The answers for rows [0, n) of x (n_features each) into out: tree by tree over the
 * block, so that a tree's nodes stay in the cache for all its rows. Each row's sum adds
 * the same leaves in the same order as evaluate() does.
 */
static void
evaluate_block(const TreeModel *m, const float4 *x, int n, float4 *scores, float4 *out)
{
	int			k = m->h.n_features;
	int			nc = m->h.n_classes;

	for (int i = 0; i < n * nc; i++)
		scores[i] = 0.0f;
	for (int t = 0; t < m->h.n_trees; t++)
	{
		const TreeNode *root = &m->nodes[m->roots[t]];

		for (int i = 0; i < n; i++)
		{
			const TreeNode *leaf = leaf_of(m, root, x + (size_t) i * k);

			scores[i * nc + leaf->feature] += leaf->value;
		}
	}
	for (int i = 0; i < n; i++)
		out[i] = finish(m, scores + (size_t) i * nc);
}

/* ---- called by Python through ctypes, never by SQL ---- */

extern PGDLLEXPORT int pgmodels_native_register(uint32 role, int64 model_id, const char *key, int key_len,
												uint64 count, const char *blob, size_t len);
extern PGDLLEXPORT void pgmodels_native_forget(uint32 role, int64 model_id, const char *key, int key_len);
extern PGDLLEXPORT int pgmodels_native_evaluate(const char *blob, size_t len, const float4 *rows, int n_rows,
												float4 *out);
extern PGDLLEXPORT uint64 pgmodels_native_answered(void);

static Entry *
find(Oid role, int64 model_id, const char *key, int key_len)
{
	for (int i = 0; i < MAX_ENTRIES; i++)
	{
		Entry	   *e = &entries[i];

		if (e->used && e->role == role && e->model_id == model_id && e->key_len == key_len &&
			memcmp(e->key, key, key_len) == 0)
			return e;
	}
	return NULL;
}

static void
drop(Entry *e)
{
	model_free(e->model);
	e->model = NULL;
	e->used = false;
}

/* role 0: forget every registration */
void
pgmodels_native_forget(uint32 role, int64 model_id, const char *key, int key_len)
{
	if (role == 0)
	{
		for (int i = 0; i < MAX_ENTRIES; i++)
			if (entries[i].used)
				drop(&entries[i]);
		return;
	}
	if (key_len >= 0 && key_len <= MAX_KEY)
	{
		Entry	   *e = find(role, model_id, key, key_len);

		if (e != NULL)
			drop(e);
	}
}

/* 1 when registered, 0 when the blob or the key is refused */
int
pgmodels_native_register(uint32 role, int64 model_id, const char *key, int key_len, uint64 count,
						 const char *blob, size_t len)
{
	Entry	   *e;
	TreeModel	   *m;

	if (role == 0 || key_len < 0 || key_len > MAX_KEY || (key_len > 0 && key == NULL))
		return 0;
	pgmodels_native_forget(role, model_id, key, key_len);
	m = model_from(blob, len);
	if (m == NULL)
		return 0;
	e = NULL;
	for (int i = 0; i < MAX_ENTRIES && e == NULL; i++)
		if (!entries[i].used)
			e = &entries[i];
	if (e == NULL)
	{
		e = &entries[next_victim];
		next_victim = (next_victim + 1) % MAX_ENTRIES;
		drop(e);
	}
	e->role = role;
	e->model_id = model_id;
	e->key_len = key_len;
	if (key_len > 0)
		memcpy(e->key, key, key_len);
	e->count = count;
	e->model = m;
	e->used = true;
	return 1;
}

/*
 * Rows through a blob without registering it, one by one and in blocks: Python's check
 * against onnxruntime. 0 when the blob is refused or the two ways disagree.
 */
int
pgmodels_native_evaluate(const char *blob, size_t len, const float4 *rows, int n_rows, float4 *out)
{
	TreeModel  *m = model_from(blob, len);
	float4	   *scores;
	float4	   *block;
	int			agree = 1;

	if (m == NULL)
		return 0;
	scores = palloc(sizeof(float4) * m->h.n_classes * BLOCK);
	block = palloc(sizeof(float4) * BLOCK);
	for (int i = 0; i < n_rows; i++)
		out[i] = evaluate(m, rows + (size_t) i * m->h.n_features, scores);
	for (int r = 0; r < n_rows && agree; r += BLOCK)
	{
		int			b = n_rows - r < BLOCK ? n_rows - r : BLOCK;

		evaluate_block(m, rows + (size_t) r * m->h.n_features, b, scores, block);
		agree = memcmp(block, out + r, sizeof(float4) * b) == 0;
	}
	pfree(block);
	pfree(scores);
	model_free(m);
	return agree;
}

uint64
pgmodels_native_answered(void)
{
	return answered;
}

/* ---- SQL ---- */

/*
 * The registration that answers the calling role for a project (model_id 0) or a model
 * id in this statement, or NULL: cache.py's conditions for serving a kept decision.
 */
static const TreeModel *
registered(text *project, int64 model_id)
{
	Oid			role = GetUserId();
	Entry	   *e;
	char	   *key;
	int			key_len;

	if (role != GetOuterUserId() || TransactionIdIsValid(GetTopTransactionIdIfAny()) ||
		GetCurrentTimestamp() - GetCurrentTransactionStartTimestamp() >= WINDOW_USECS)
		return NULL;

	key = model_id == 0 ? VARDATA_ANY(project) : NULL;
	key_len = model_id == 0 ? VARSIZE_ANY_EXHDR(project) : 0;
	if (key_len > MAX_KEY)
		return NULL;
	e = find(role, model_id, key, key_len);
	if (e == NULL)
		return NULL;

	/*
	 * Take in what committed since the backend last read the invalidation queue: a later
	 * statement of a transaction need not lock anything new, and a deploy or revoke its
	 * snapshot sees must not be answered from an older count. (PostgreSQL does the same
	 * at every relation lock; with nothing queued it is a read of one flag.)
	 */
	AcceptInvalidationMessages();
	if (e->count != SharedInvalidMessageCounter)
		return NULL;
	return e->model;
}

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
	const TreeModel *m = registered(project, model_id);
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
	*answer = evaluate(m, x, s);
	answered++;
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
	m = registered(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(1));
	if (m == NULL)
		PG_RETURN_NULL();
	a = PG_GETARG_ARRAYTYPE_P(2);
	k = m->h.n_features;
	n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	if (ARR_HASNULL(a) || n == 0 || n % k != 0 || ARR_NDIM(a) > 2 || (ARR_NDIM(a) == 2 && ARR_DIMS(a)[1] != k))
		PG_RETURN_NULL();
	rows = n / k;
	x = palloc(sizeof(float4) * k * BLOCK);
	s = palloc(sizeof(float4) * m->h.n_classes * BLOCK);
	answers = palloc(sizeof(float4) * BLOCK);
	out = palloc(sizeof(Datum) * rows);
	for (int r = 0; r < rows; r += BLOCK)
	{
		int			b = rows - r < BLOCK ? rows - r : BLOCK;

		CHECK_FOR_INTERRUPTS();
		if (!read_row(a, (size_t) r * k, k * b, x))
			PG_RETURN_NULL();
		evaluate_block(m, x, b, s, answers);
		for (int i = 0; i < b; i++)
			out[r + i] = Float4GetDatum(answers[i]);
	}
	answered += rows;
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

/* pgmodels._stamp(): date_part('epoch', statement_timestamp()) + date_part('epoch', now()) */
static float8
statement_stamp(void)
{
	Datum		epoch = CStringGetTextDatum("epoch");
	float8		statement = DatumGetFloat8(DirectFunctionCall2(timestamptz_part, epoch,
															   TimestampTzGetDatum(GetCurrentStatementStartTimestamp())));
	float8		transaction = DatumGetFloat8(DirectFunctionCall2(timestamptz_part, epoch,
																 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())));

	return statement + transaction;
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
	stamp = statement_stamp();
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
