module tdlab/idle-reuse-reset

go 1.22
