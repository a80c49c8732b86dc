module tdlab/sse-readiness-probe

go 1.22
