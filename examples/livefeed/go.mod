module example.com/livefeed

go 1.22
