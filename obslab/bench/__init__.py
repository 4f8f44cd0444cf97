"""Benchmarks behind `obslab bench`: each prints the figures it measured."""
