module tdlab/healthy

go 1.22
