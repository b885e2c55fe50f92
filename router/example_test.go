package router_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/router"
)

func Example() {
	const yaml = `
listeners:
  - {name: public, address: "127.0.0.1:8080", route_config: main}
route_configs:
  - name: main
    virtual_hosts:
      - name: example
        domains: [example.com, "*.example.com"]
        routes:
          - match: {prefix: /api/, headers: [{name: x-canary, exact: "1"}]}
            route: {cluster: api_canary}
          - match: {prefix: /api/}
            route: {cluster: api, prefix_rewrite: /}
          - match: {path: /old}
            redirect: {path_redirect: /new, https_redirect: true}
          - match: {prefix: /}
            route:
              weighted_clusters: [{name: web_v1, weight: 90}, {name: web_v2, weight: 10}]
clusters:
  - {name: api, endpoints: ["10.0.0.1:8080"]}
  - {name: api_canary, endpoints: ["10.0.0.2:8080"]}
  - {name: web_v1, endpoints: ["10.0.0.3:8080"]}
  - {name: web_v2, endpoints: ["10.0.0.4:8080"]}
`
	dir, _ := os.Getwd()
	cfg, err := config.Parse([]byte(yaml), filepath.Join(dir, "edge.yaml"), dir)
	if err != nil {
		log.Fatal(err)
	}
	index := map[string]int{}
	for i, c := range cfg.Clusters {
		index[c.Name] = i
	}
	table, err := router.Compile(cfg, &cfg.RouteConfigs[0], "route_configs[0]", index)
	if err != nil {
		log.Fatal(err)
	}

	var h message.Header
	h.Add("x-canary", "1")
	vh, r := table.Match("WWW.Example.com:8080", "/api/users?id=7", &h)
	fmt.Println(vh.Name, cfg.Clusters[r.PickCluster(0)].Name)

	_, r = table.Match("example.com", "/api/users?id=7", nil)
	fmt.Println(cfg.Clusters[r.PickCluster(0)].Name, r.RewritePath("/api/users?id=7"))

	_, r = table.Match("example.com:80", "/old?x=1", nil)
	fmt.Println(r.RedirectCode(), r.RedirectLocation("http", "example.com:80", "/old?x=1"))

	_, r = table.Match("example.com", "/index.html", nil)
	fmt.Println(cfg.Clusters[r.PickCluster(42)].Name, cfg.Clusters[r.PickCluster(95)].Name)

	vh, _ = table.Match("example.org", "/", nil)
	fmt.Println(vh == nil)
	// Output:
	// example api_canary
	// api /users?id=7
	// 301 https://example.com/new?x=1
	// web_v1 web_v2
	// true
}
