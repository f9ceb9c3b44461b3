module snapback

go 1.26.0

require (
	github.com/spf13/cobra v1.10.2
	howett.net/plist v1.0.1
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
)
