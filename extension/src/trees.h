/*
 * The trees of pgmodels_native (trees.c): a tree ensemble as serving/native.py lays it
 * out, its walk, and the registrations Python makes through ctypes; native.c holds the
 * SQL functions that answer from them.
 */
#ifndef PGMODELS_TREES_H
#define PGMODELS_TREES_H

#include "postgres.h"

#define TREES_BLOCK 64			/* rows a batch walks each tree for at once */

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
	/*
	 * The same trees as complete binary trees of one depth (when every branch compares
	 * one way, "<" or "<=", and no tree is deeper than FULL_MAX_DEPTH), walked without
	 * a branch: node j's children are 2j+1 (the comparison holds) and 2j+2. A leaf
	 * above the full depth is repeated under padding nodes, so every row reaches the
	 * leaf it reaches in nodes[], and its sum adds the same leaves in the same order.
	 * depth 0: not built, the walk follows nodes[].
	 */
	int			depth;
	int32	   *full_feature;	/* [n_trees][2^depth - 1] */
	float4	   *full_value;		/* [n_trees][2^depth - 1] */
	int32	   *leaf_class;		/* [n_trees][2^depth] */
	float4	   *leaf_weight;	/* [n_trees][2^depth] */
	char	   *full_memory;
} TreeModel;

#define FULL_MAX_DEPTH 10

/* the registration answering the calling role in this statement, or NULL */
extern const TreeModel *trees_registered(text *project, int64 model_id);
/* pgmodels._stamp() of the statement running */
extern float8 trees_statement_stamp(void);
/* one row's answer; scores: n_classes floats of scratch */
extern float4 trees_evaluate(const TreeModel *m, const float4 *x, float4 *scores);
/* rows [0, n) of x into out; scores: n * n_classes floats of scratch */
extern void trees_evaluate_block(const TreeModel *m, const float4 *x, int n, float4 *scores, float4 *out);

#endif
