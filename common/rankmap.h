/* rankmap.h — the rank <-> (tp, dp, pp) mapping, Megatron order.
 *
 *   rank = tp_rank + tp * (dp_rank + dp * pp_rank)
 *
 * tp varies fastest so tensor-parallel groups stay inside a node; dp next;
 * pp slowest. Used by the planner (which groups cross nodes) and by the
 * executor (which communicators to build). Header-only and pure.
 */
#ifndef TRIAD_RANKMAP_H
#define TRIAD_RANKMAP_H

typedef struct {
    int tp_rank, dp_rank, pp_rank;
} rankmap_coord;

static inline int rankmap_rank(int tp, int dp, int tp_rank, int dp_rank, int pp_rank)
{
    return tp_rank + tp * (dp_rank + dp * pp_rank);
}

static inline rankmap_coord rankmap_coord_of(int rank, int tp, int dp)
{
    rankmap_coord c;
    c.tp_rank = rank % tp;
    c.dp_rank = (rank / tp) % dp;
    c.pp_rank = rank / (tp * dp);
    return c;
}

/* Node of a rank when nodes hold gpus_per_node consecutive ranks. */
static inline int rankmap_node(int rank, int gpus_per_node)
{
    return rank / gpus_per_node;
}

/* Whether a group stays inside one node. A tp group is `tp` consecutive
 * ranks starting at a multiple of tp; a dp group has stride tp; a pp group
 * stride tp*dp. A group spans nodes when its first and last member differ in
 * node (groups are arithmetic progressions, so this is exact when the stride
 * divides or is a multiple of gpus_per_node, which holds for powers of two;
 * otherwise the first group is examined member by member). */
static inline int rankmap_group_crosses_nodes(int first, int stride, int size, int gpus_per_node)
{
    int node0 = first / gpus_per_node;
    for (int i = 1; i < size; i++)
        if ((first + i * stride) / gpus_per_node != node0)
            return 1;
    return 0;
}

static inline int rankmap_tp_crosses_nodes(int tp, int gpus_per_node)
{
    return rankmap_group_crosses_nodes(0, 1, tp, gpus_per_node);
}
static inline int rankmap_dp_crosses_nodes(int tp, int dp, int gpus_per_node)
{
    return rankmap_group_crosses_nodes(0, tp, dp, gpus_per_node);
}
static inline int rankmap_pp_crosses_nodes(int tp, int dp, int pp, int gpus_per_node)
{
    return rankmap_group_crosses_nodes(0, tp * dp, pp, gpus_per_node);
}

#endif /* TRIAD_RANKMAP_H */
