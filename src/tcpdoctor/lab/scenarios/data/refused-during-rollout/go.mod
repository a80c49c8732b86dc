module tdlab/refused-during-rollout

go 1.22
