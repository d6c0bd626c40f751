name             'runlens_handler'
maintainer       'runlens'
description      'Publishes Chef run reports (runlens chef_handler JSON) to RabbitMQ with a report/exception handler'
version          '1.0.0'
chef_version     '>= 14.0'

%w(amazon centos debian fedora oracle redhat rocky almalinux suse opensuseleap ubuntu).each do |os|
  supports os
end
