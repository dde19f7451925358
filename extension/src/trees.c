/*
 * pgmodels_native's trees: the layout serving/native.py builds, checked link by link
 * when it arrives (model_from), the walk of a row as onnxruntime's TreeEnsemble kernels
 * make it (single-precision comparisons and sums, trees in order), and the per-backend
 * registrations Python makes through ctypes for the decisions its cache confirmed. See
 * native.c for the rules an answer is served by.
 */
#include "postgres.h"

#include <string.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/sinval.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "trees.h"

#define MAGIC 0x706d6e31		/* "pmn1": the layout below */
#define MAX_ENTRIES 32
#define MAX_KEY 256
#define WINDOW_USECS 1000000	/* cache.py's TTL */

typedef struct Entry
{
	bool		used;
	Oid			role;
	int64		model_id;
	int			key_len;
	char		key[MAX_KEY];
	int64		served;			/* the model id the trees are of */
	bool		counted;		/* registered for a confirmed decision, at count */
	uint64		count;
	float8		stamp;			/* registered for the statement of this stamp, */
	TimestampTz until;			/* until then (0: not), */
	LocalTransactionId lxid;	/* in this transaction, */
	uint64		completions;	/* while no transaction has committed since, */
	CommandId	cid;			/* and this one has written nothing more */
	TreeModel	   *model;
} Entry;

static Entry entries[MAX_ENTRIES];
static int	next_victim = 0;

#define FULL_MAX_BYTES ((size_t) 16 << 20)	/* larger ensembles walk nodes[] */

/* The depth of the tree below node i (d its own), or FULL_MAX_DEPTH + 1 when deeper. */
static int
depth_below(const TreeModel *m, int32 i, int d)
{
	const TreeNode *n = &m->nodes[i];
	int			yes;
	int			no;

	if (n->mode == LEAF)
		return d;
	if (d >= FULL_MAX_DEPTH)
		return FULL_MAX_DEPTH + 1;
	yes = depth_below(m, n->yes, d + 1);
	if (yes > FULL_MAX_DEPTH)
		return yes;
	no = depth_below(m, n->no, d + 1);
	return yes > no ? yes : no;
}

/* Tree t's node i at position pos (depth d) of its complete tree, and all below it. */
static void
fill(TreeModel *m, int t, int32 i, uint32 pos, int d)
{
	const TreeNode *n = &m->nodes[i];
	uint32		inner = (1u << m->depth) - 1;

	if (d == m->depth)
	{
		/* depth_below() made every node this deep a leaf */
		m->leaf_class[(size_t) t * (inner + 1) + (pos - inner)] = n->feature;
		m->leaf_weight[(size_t) t * (inner + 1) + (pos - inner)] = n->value;
		return;
	}
	m->full_feature[(size_t) t * inner + pos] = n->mode == LEAF ? 0 : n->feature;
	m->full_value[(size_t) t * inner + pos] = n->mode == LEAF ? 0.0f : n->value;
	/* a leaf above the full depth: the same leaf down both sides */
	fill(m, t, n->mode == LEAF ? i : n->yes, 2 * pos + 1, d + 1);
	fill(m, t, n->mode == LEAF ? i : n->no, 2 * pos + 2, d + 1);
}

/* The complete trees of a model whose branches compare one way, when small enough. */
static void
build_full(TreeModel *m)
{
	int			depth = 0;
	size_t		inner;
	size_t		bytes;
	char	   *p;

	m->depth = 0;
	if (m->same_mode != BRANCH_LT && m->same_mode != BRANCH_LEQ)
		return;
	for (int t = 0; t < m->h.n_trees; t++)
	{
		int			d = depth_below(m, m->roots[t], 0);

		if (d > FULL_MAX_DEPTH)
			return;
		depth = d > depth ? d : depth;
	}
	if (depth == 0)
		return;
	inner = ((size_t) 1 << depth) - 1;
	bytes = (size_t) m->h.n_trees * (inner + inner + 1) * (sizeof(int32) + sizeof(float4));
	if (bytes > FULL_MAX_BYTES)
		return;
	p = MemoryContextAllocExtended(TopMemoryContext, bytes, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
	if (p == NULL)
		return;
	m->full_memory = p;
	m->full_feature = (int32 *) p;
	m->full_value = (float4 *) (m->full_feature + m->h.n_trees * inner);
	m->leaf_class = (int32 *) (m->full_value + m->h.n_trees * inner);
	m->leaf_weight = (float4 *) (m->leaf_class + m->h.n_trees * (inner + 1));
	m->depth = depth;
	for (int t = 0; t < m->h.n_trees; t++)
		fill(m, t, m->roots[t], 0, 0);
}

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
	m->full_memory = NULL;
	build_full(m);
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
		if (m->full_memory != NULL)
			pfree(m->full_memory);
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
 * The leaves' sums of rows [0, n) (n <= TREES_BLOCK) through the complete trees: each
 * tree takes every row one level down at a time, so the rows' walks are independent
 * work for the processor, and no comparison is a branch to predict.
 */
#define FULL_LEVELS(cmp) \
	for (int d = 0; d < m->depth; d++) \
		for (int i = 0; i < n; i++) \
			at[i] = 2 * at[i] + 1 + (uint32) !(x[(size_t) i * k + feature[at[i]]] cmp value[at[i]])

static void
full_sums(const TreeModel *m, const float4 *x, int n, float4 *scores)
{
	int			k = m->h.n_features;
	int			nc = m->h.n_classes;
	uint32		inner = (1u << m->depth) - 1;
	uint32		at[TREES_BLOCK];

	for (int t = 0; t < m->h.n_trees; t++)
	{
		const int32 *feature = m->full_feature + (size_t) t * inner;
		const float4 *value = m->full_value + (size_t) t * inner;
		const int32 *leaf_class = m->leaf_class + (size_t) t * (inner + 1);
		const float4 *leaf_weight = m->leaf_weight + (size_t) t * (inner + 1);

		for (int i = 0; i < n; i++)
			at[i] = 0;
		if (m->same_mode == BRANCH_LT)
			FULL_LEVELS(<);
		else
			FULL_LEVELS(<=);
		for (int i = 0; i < n; i++)
			scores[i * nc + leaf_class[at[i] - inner]] += leaf_weight[at[i] - inner];
	}
}

/*
 * The answer for one row of n_features finite float4 values, as onnxruntime gives it:
 * each tree's leaf added in tree order, in single precision.
 */
float4
trees_evaluate(const TreeModel *m, const float4 *x, float4 *scores)
{
	for (int c = 0; c < m->h.n_classes; c++)
		scores[c] = 0.0f;
	if (m->depth > 0)
		full_sums(m, x, 1, scores);
	else
		for (int t = 0; t < m->h.n_trees; t++)
		{
			const TreeNode *leaf = leaf_of(m, &m->nodes[m->roots[t]], x);

			scores[leaf->feature] += leaf->value;
		}
	return finish(m, scores);
}

/*
 * The answers for rows [0, n) of x (n_features each, n <= TREES_BLOCK) into out: tree by
 * tree over the block, so that a tree's nodes stay in the cache for all its rows. Each
 * row's sum adds the same leaves in the same order as evaluate() does.
 */
void
trees_evaluate_block(const TreeModel *m, const float4 *x, int n, float4 *scores, float4 *out)
{
	int			k = m->h.n_features;
	int			nc = m->h.n_classes;

	for (int i = 0; i < n * nc; i++)
		scores[i] = 0.0f;
	if (m->depth > 0)
		full_sums(m, x, n, scores);
	else
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
												int64 served, uint64 count, const char *blob, size_t len);
extern PGDLLEXPORT int pgmodels_native_register_statement(uint32 role, int64 model_id, const char *key,
														  int key_len, int64 served, float8 stamp,
														  const char *blob, size_t len);
extern PGDLLEXPORT int pgmodels_native_score(const char *blob, size_t len, const float4 *rows, int n_rows,
											 float4 *out);
extern PGDLLEXPORT void pgmodels_native_forget(uint32 role, int64 model_id, const char *key, int key_len);
extern PGDLLEXPORT int pgmodels_native_evaluate(const char *blob, size_t len, const float4 *rows, int n_rows,
												float4 *out);

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

/*
 * The entry of (role, model_id, key) holding the trees of model served, made from the
 * blob when it holds another model's or there is none; NULL when refused.
 */
static Entry *
entry_for(uint32 role, int64 model_id, const char *key, int key_len, int64 served, const char *blob,
		  size_t len)
{
	Entry	   *e;
	TreeModel	   *m;

	if (role == 0 || key_len < 0 || key_len > MAX_KEY || (key_len > 0 && key == NULL))
		return NULL;
	e = find(role, model_id, key, key_len);
	if (e != NULL && e->served == served)
		return e;
	if (e != NULL)
		drop(e);
	m = model_from(blob, len);
	if (m == NULL)
		return NULL;
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
	memset(e, 0, sizeof(Entry));
	e->role = role;
	e->model_id = model_id;
	e->key_len = key_len;
	if (key_len > 0)
		memcpy(e->key, key, key_len);
	e->served = served;
	e->model = m;
	e->used = true;
	return e;
}

/* A confirmed decision, served while the invalidation count is count: 1 when registered. */
int
pgmodels_native_register(uint32 role, int64 model_id, const char *key, int key_len, int64 served, uint64 count,
						 const char *blob, size_t len)
{
	Entry	   *e = entry_for(role, model_id, key, key_len, served, blob, len);

	if (e == NULL)
		return 0;
	e->counted = true;
	e->count = count;
	return 1;
}

/*
 * A lookup's decision, served to the rest of the statement of this stamp for a second
 * (cache.py's TTL for a statement's registration): 1 when registered.
 */
int
pgmodels_native_register_statement(uint32 role, int64 model_id, const char *key, int key_len, int64 served,
								   float8 stamp, const char *blob, size_t len)
{
	Entry	   *e = entry_for(role, model_id, key, key_len, served, blob, len);

	if (e == NULL)
		return 0;
	e->until = 0;
	if (!ActiveSnapshotSet())
		return 0;
	e->stamp = stamp;
	e->lxid = MyProc->lxid;
	e->completions = GetActiveSnapshot()->snapXactCompletionCount;
	e->cid = GetActiveSnapshot()->curcid;
	e->until = GetCurrentTimestamp() + WINDOW_USECS;
	return 1;
}

/* Rows through a blob, in blocks, without registering it: 1 when scored, 0 when refused. */
int
pgmodels_native_score(const char *blob, size_t len, const float4 *rows, int n_rows, float4 *out)
{
	TreeModel  *m = model_from(blob, len);
	float4	   *scores;

	if (m == NULL)
		return 0;
	scores = palloc(sizeof(float4) * m->h.n_classes * TREES_BLOCK);
	for (int r = 0; r < n_rows; r += TREES_BLOCK)
		trees_evaluate_block(m, rows + (size_t) r * m->h.n_features,
							 n_rows - r < TREES_BLOCK ? n_rows - r : TREES_BLOCK, scores, out + r);
	pfree(scores);
	model_free(m);
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
	scores = palloc(sizeof(float4) * m->h.n_classes * TREES_BLOCK);
	block = palloc(sizeof(float4) * TREES_BLOCK);
	for (int i = 0; i < n_rows; i++)
		out[i] = trees_evaluate(m, rows + (size_t) i * m->h.n_features, scores);
	for (int r = 0; r < n_rows && agree; r += TREES_BLOCK)
	{
		int			b = n_rows - r < TREES_BLOCK ? n_rows - r : TREES_BLOCK;

		trees_evaluate_block(m, rows + (size_t) r * m->h.n_features, b, scores, block);
		agree = memcmp(block, out + r, sizeof(float4) * b) == 0;
	}
	pfree(block);
	pfree(scores);
	model_free(m);
	return agree;
}

/*
 * The registration that answers the calling role for a project (model_id 0) or a model
 * id in this statement, or NULL: cache.py's conditions for serving a kept decision.
 */
const TreeModel *
trees_registered(text *project, int64 model_id)
{
	Oid			role = GetUserId();
	Entry	   *e;
	char	   *key;
	int			key_len;

	if (role != GetOuterUserId())
		return NULL;
	key = model_id == 0 ? VARDATA_ANY(project) : NULL;
	key_len = model_id == 0 ? VARSIZE_ANY_EXHDR(project) : 0;
	if (key_len > MAX_KEY)
		return NULL;
	e = find(role, model_id, key, key_len);
	if (e == NULL)
		return NULL;

	/*
	 * This statement's lookup (the version it chose, for its first second). The stamp
	 * alone is not the statement: every statement and transaction of one query string
	 * shares statement_timestamp(). So the transaction must be the same, and its
	 * snapshot must have seen no commit since (snapXactCompletionCount: any committed
	 * grant, revoke or deploy moves it) nor a write of its own (curcid).
	 */
	if (e->until != 0 && GetCurrentTimestamp() < e->until && e->stamp == trees_statement_stamp() &&
		e->lxid == MyProc->lxid && ActiveSnapshotSet() &&
		GetActiveSnapshot()->snapXactCompletionCount == e->completions && GetActiveSnapshot()->curcid == e->cid)
		return e->model;

	if (!e->counted || TransactionIdIsValid(GetTopTransactionIdIfAny()) ||
		GetCurrentTimestamp() - GetCurrentTransactionStartTimestamp() >= WINDOW_USECS)
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

/* pgmodels._stamp(): date_part('epoch', statement_timestamp()) + date_part('epoch', now()) */
float8
trees_statement_stamp(void)
{
	Datum		epoch = CStringGetTextDatum("epoch");
	float8		statement = DatumGetFloat8(DirectFunctionCall2(timestamptz_part, epoch,
															   TimestampTzGetDatum(GetCurrentStatementStartTimestamp())));
	float8		transaction = DatumGetFloat8(DirectFunctionCall2(timestamptz_part, epoch,
																 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())));

	return statement + transaction;
}
