"""Search over the forum's cleaned posts: the index file's format and the queries on it.

The index stage (forumtune.index) writes the files; chat, serve and build read them through this
package, as every stage reads the forum store through forumtune.forum_store.

    search_index.py   the SQLite file: passages, their BM25 full-text index (FTS5), what was indexed
    vectors.py        the dense vectors of the passages (usearch), keyed by passage id
    retriever.py      a question → the best passages: BM25, dense, or both fused by reciprocal rank
    context.py        passages as prompt context within a token budget, and as cited sources
"""
