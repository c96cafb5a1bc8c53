# Regenerates psych-corpus.json: random documents and tricky strings with
# what Ruby printed for them, to pin format.YAML/format.JSON to Psych byte for
# byte beyond the hand-picked cases. Run with the Ruby the old server used
# (3.1.2, Psych 4.0.3, libyaml 0.2.5; Debian 12's ruby3.1 package):
#   ruby psych-corpus.rb > psych-corpus.json
# Values Ruby cannot dump (e.g. "0b_", which makes Psych raise) are left out.
require 'yaml'
require 'json'
srand(20130515)
ATOMS = ["a","b","z","Y","x1","0","1","9","8"," ","  ","\t","\n","\n\n","\r",":",": ","#"," #","-","- ","?","? ",",","[","]","{","}","&","*","!","|",">","'","\"","%","@","`","~",".","...","---","+","_","/","\\","é","テスト","😀","\u0085","\u2028","\u00a0","\ufeff","\u0000","\u007f","\e","\u0007","<<","=","^","(",")",";","$","\u0301","ǅ","Ⅻ","²","٣"]
WORDS = ["true","false","yes","no","on","off","y","n","Y","N","null","Null","NULL","~","True","TRUE","nO","oFF","1","-1","+1","0","00","007","08","0789","019","1_000","1,000","1,","1_","1__2","0b101","0b_","0x1F","0xzz","0x_","1.5","-1.5","+1.5",".5","1.","1.e+5","1e5","1.5e+3","1.5E-3","1.5e3",".","-.","+.",".inf","-.inf","+.inf",".nan",".NaN","1:30","1:30:15","-1:30","1:60","1:30.5","190:20:30","2013-05-15","2013-5-1","2013-02-29","2012-02-29","2013-02-30","2013-13-01","2013-00-10","2013-01-00","2013-1-32","2013-05-15T06:21:36Z","2013-05-15 06:21:36","2013-05-15t06:21:36","2013-05-15  06:21:36 Z","2013-05-15\t06:21:36","2013-05-15T06:21:36+09:00","2013-05-15T06:21:36+0900","2013-05-15T06:21:36 +09","2013-05-15T06:21:36-9","2013-05-15T06:21:36+09:","2013-05-15T06:21:36+099","2013-05-15T06:21:36+24:00","2013-05-15T06:21:36+23:59","2013-05-15T06:21:36+2360","2013-05-15T24:00:00Z","2013-05-15T24:00:01Z","2013-05-15T24:00:00.5Z","2013-05-15T23:59:60Z","2013-05-15T23:60:00Z","2013-05-15T25:00:00Z","2013-13-15T06:21:36Z","2013-05-32T06:21:36Z","2013-05-15T06:21:36.123456789Z","2013-05-15T06:21:36.Z","-2013-05-15T06:21:36Z","2013-05-15T06:21:36 ","2013-05-15T06:21:36Zx",":sym",":\"q\"","<<","=","a: b","a:b","a :b","a #b","a#b","#b","- x","-x","--x","? x","?x","@x","`x","%x","!x","&x","*x","|x",">x","'x","\"x","x\"","{x","[x","x]",",x","x,y","a'b","a\"b","x ","  x"," x","x\n","x\n\n","x\n\n\n","\n","\nx","\n x"," \nx","x \ny","x\n y","x\ty","\tx","x\t","x\ry","x\u0085y","x\u2028y","テ","テスト12345","ｔｒｕｅ","é","Ünïcödé","😀","a😀","\u00a0x","x\u00a0","\ufeffx","\u0000","a\u0000b","\e[0m","ab\\cd","C:\\dir","http://x/y?z=1&b=2","10.0.2.100","4a:5b:6c","ssh-rsa AAAA user@host","-----BEGIN-----","i-abcd1234","x_y","_x","=x","^x","(x)","$x",";x","/x","\\x","~x","y\n","n\n","no\n","\u0301x","Ⅻx","²x","٣x","ǅx"]
def rstr
  case rand(6)
  when 0 then WORDS.sample
  when 1 then (1..rand(1..6)).map { ATOMS.sample }.join
  when 2 then WORDS.sample + ATOMS.sample
  when 3 then ATOMS.sample + WORDS.sample
  when 4 then (1..rand(10..40)).map { [WORDS.sample, "word", "aa", "b"].sample }.join([" ", " ", " ", "  ", ": ", "\n", " \n"].sample)
  else (1..rand(1..25)).map { ["word", "xx", "a"*rand(1..30), "y", ATOMS.sample].sample }.join(" ")
  end
end
def rkey
  case rand(10)
  when 0 then rstr
  when 1 then "k" * rand(120..135)
  when 2 then ""
  else ["id","name","a","b","x_y","display_name","k#{rand(100)}"].sample
  end
end
def rval(depth)
  r = rand(depth > 3 ? 6 : 10)
  case r
  when 0,1,2 then rstr
  when 3 then [nil, true, false].sample
  when 4 then [0, 1, -5, 1099511627776, rand(-100000..100000)].sample
  when 5 then [1.5, 2.0, 100.0, 0.1, 1e20, 1e16, 1e15, 123456789012345.6, 0.0001, 0.00001, 1.5e-7, -0.0, 0.0, rand * 10 ** rand(-8..22), -rand*1000].sample
  when 6,7 then h = {}; rand(0..5).times { h[rkey.to_sym] = rval(depth+1) }; h
  else Array.new(rand(0..4)) { rval(depth+1) }
  end
end
def jsonable(v)
  case v
  when Hash then v.each_with_object({}) { |(k, x), h| h[k.to_s] = jsonable(x) }
  when Array then v.map { |x| jsonable(x) }
  else v
  end
end
cases = []
add = lambda do |name, v|
  y = (v.to_yaml rescue nil)
  j = (JSON.generate(jsonable(v)) rescue nil)
  next unless y && j
  cases << {name: name, value: jsonable(v), yaml: y, json: j}
end
250.times { |i| v = rval(rand(0..2)); v = {doc: v, s: rstr} if rand(3) == 0; add.("doc#{i}", v) }
strs = (WORDS + ATOMS + Array.new(1000) { ATOMS.sample(2).join } + Array.new(800) { (1..3).map { ATOMS.sample }.join } +
        Array.new(300) { rstr }).uniq
strs.each_with_index do |s, i|
  add.("str#{i}", i.even? ? {k: s} : {s.to_sym => [s]})
end
floats = Array.new(300) { (rand * 10**rand(1..17)).floor.to_f * 10.0**rand(-25..25) * [1, -1].sample }
add.("floats", {f: floats})
puts JSON.generate({generator: "Ruby #{RUBY_VERSION}, Psych #{Psych::VERSION}, libyaml #{Psych::LIBYAML_VERSION}", cases: cases})
