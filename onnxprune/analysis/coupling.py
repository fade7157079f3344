"""The channel-axis dependency graph (networkx) and its connected components, the coupling
components the groups are resolved from.

Nodes are channel axes `(tensor, axis)`, one edge per pair of axes some rule links. networkx
lists components by the first node each one has in insertion order, and nodes are inserted
as the links name them (each link's two ends in turn), so the component order, which the
group ids follow, depends only on the link order.

>>> graph = coupling_graph(links)  # doctest: +SKIP
>>> with extended(graph, more_links):  # doctest: +SKIP
...     trial = coupling_components(graph)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import networkx as nx

from onnxprune.analysis.flow import Dim, Link


def coupling_graph(links: Iterable[Link]) -> nx.Graph:
    """A networkx graph with an edge between the two axes of every link (in link order)."""
    graph = nx.Graph()
    graph.add_edges_from((link.a, link.b) for link in links)
    return graph


def add_links(graph: nx.Graph, links: Iterable[Link]) -> None:
    """Add the edges of `links` to `graph`, in order (as if it had been built with them)."""
    graph.add_edges_from((link.a, link.b) for link in links)


@contextmanager
def extended(graph: nx.Graph, links: list[Link]) -> Iterator[nx.Graph]:
    """`graph` with the edges of `links` added for the duration of the block, then exactly as it
    was (the axes and edges it did not have removed again), so one graph serves every trial
    choice of alternatives without being rebuilt. New axes come after the old ones, in link
    order: the order a graph built from all the links at once would list them in."""
    new_nodes = [d for d in dict.fromkeys(d for link in links for d in (link.a, link.b)) if d not in graph]
    new_edges = [(link.a, link.b) for link in links if not graph.has_edge(link.a, link.b)]
    graph.add_edges_from(new_edges)
    try:
        yield graph
    finally:
        graph.remove_edges_from(new_edges)
        graph.remove_nodes_from(new_nodes)


def coupling_components(graph: nx.Graph) -> list[list[Dim]]:
    """The connected components of `graph` in networkx's order, each one's axes sorted."""
    return [sorted(component) for component in nx.connected_components(graph)]
