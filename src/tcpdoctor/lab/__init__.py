"""The lab: real servers in network namespaces, and the helpers tests share to build them."""
